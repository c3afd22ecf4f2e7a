//! SDP offer/answer tests: offers in the styles of SIPp, baresip and ffmpeg, IPv6,
//! multicast, answers checked field by field, round trips, and bad input.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use as_server::sip::sdp::{
    AnswerPolicy, AnswerTransport, Capabilities, CodecSpec, Direction, MediaKind, MediaTransport,
    NegotiationError, OfferBuilder, OfferedMedia, RtcpAttr, RtcpUnicastMode, SdpError, SdpOffer,
    SessionDescription,
};

fn crlf(s: &str) -> Vec<u8> {
    s.trim_start()
        .lines()
        .map(|l| format!("{}\r\n", l.trim()))
        .collect::<String>()
        .into_bytes()
}

const RELAY: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10));

/// Policy of a viewer's join: the relay sends H.264 or MP2T video and opus/PCMU audio.
fn viewer_policy() -> AnswerPolicy {
    AnswerPolicy {
        caps: Capabilities {
            direction: Direction::SendOnly,
            codecs: vec![
                CodecSpec::h264_mode1(),
                CodecSpec::mp2t(),
                CodecSpec::opus(),
                CodecSpec::pcmu(),
            ],
            single_codec: true,
        },
        transport: AnswerTransport {
            addresses: vec![RELAY, IpAddr::V6("2001:db8::10".parse().unwrap())],
            video: Some(MediaTransport {
                rtp_port: 40000,
                rtcp: None,
                ssrc: None,
            }),
            audio: Some(MediaTransport {
                rtp_port: 40002,
                rtcp: Some(RtcpAttr {
                    port: 40013,
                    addr: None,
                }),
                ssrc: None,
            }),
            feedback_target: None,
            session_id: 424242,
            session_version: 7,
            session_name: "iptv".into(),
            cname: None,
        },
    }
}

fn lines(b: &[u8]) -> Vec<String> {
    let s = std::str::from_utf8(b).unwrap();
    assert!(s.ends_with("\r\n"), "ends with CRLF");
    // Every line ends with CRLF: no bare LF anywhere.
    assert_eq!(s.matches('\n').count(), s.matches("\r\n").count());
    s.split("\r\n")
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

// ---------------------------------------------------------------- parsing

#[test]
fn sipp_style_offer_static_payload_without_rtpmap() {
    // SIPp's uac scenario writes a static PT and no a=rtpmap, with bare LF line ends.
    let offer = SdpOffer::parse(
        b"v=0\no=user1 53655765 2353687637 IN IP4 127.0.0.1\ns=-\nc=IN IP4 127.0.0.1\nt=0 0\nm=audio 6000 RTP/AVP 0\n",
    )
    .unwrap();
    assert_eq!(offer.session_id(), "53655765");
    assert_eq!(offer.session_version(), 2353687637);
    let m = &offer.media()[0];
    assert_eq!(m.kind, MediaKind::Audio);
    assert_eq!(m.port, 6000);
    assert_eq!(m.proto.as_str(), "RTP/AVP");
    assert!(m.proto.is_rtp());
    assert_eq!(m.direction, Direction::SendRecv);
    assert_eq!(m.direction_attr, None);
    assert_eq!(m.codecs.len(), 1);
    assert!(m.codecs[0].is("PCMU"));
    assert_eq!(m.codecs[0].clock_rate, 8000);
    assert_eq!(m.rtp_addr(), Some(SocketAddr::from(([127, 0, 0, 1], 6000))));
    assert_eq!(
        m.rtcp_addr(),
        Some(SocketAddr::from(([127, 0, 0, 1], 6001)))
    );
    // `sipp -sd uac` writes the same with `a=rtpmap:0 PCMU/8000`: same view.
    let with_map = SdpOffer::parse(
        b"v=0\no=user1 53655765 2353687637 IN IP4 127.0.0.1\ns=-\nc=IN IP4 127.0.0.1\nt=0 0\nm=audio 6000 RTP/AVP 0\na=rtpmap:0 PCMU/8000\n",
    )
    .unwrap();
    assert_eq!(with_map.media()[0].codecs, m.codecs);
    // A viewer policy with PCMU answers it (SIPp's uac against the AS).
    let answer = offer.answer(&viewer_policy()).unwrap();
    assert_eq!(answer.negotiated()[0].codec.payload_type, 0);
    assert!(lines(&answer.to_bytes()).contains(&"m=audio 40002 RTP/AVP 0".to_string()));
}

const BARESIP: &str = "
v=0
o=- 1185446735 2939876541 IN IP4 198.51.100.7
s=-
c=IN IP4 198.51.100.7
t=0 0
a=tool:baresip 3.10.1
m=audio 10030 RTP/AVP 96 0 8 101
b=AS:64
a=rtpmap:96 opus/48000/2
a=fmtp:96 stereo=1;sprop-stereo=1
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
a=rtcp-rsize
a=recvonly
a=label:1
m=video 10032 RTP/AVPF 97 98
b=AS:1500
a=rtpmap:97 H264/90000
a=fmtp:97 packetization-mode=0;profile-level-id=42e01f
a=rtpmap:98 H264/90000
a=fmtp:98 packetization-mode=1;profile-level-id=640028
a=rtcp-fb:* nack pli
a=rtcp:10040 IN IP4 198.51.100.8
a=recvonly
a=mid:v1
";

#[test]
fn baresip_style_offer() {
    let offer = SdpOffer::parse(&crlf(BARESIP)).unwrap();
    assert_eq!(offer.media().len(), 2);
    let a = &offer.media()[0];
    assert_eq!(a.kind, MediaKind::Audio);
    assert_eq!(a.formats, ["96", "0", "8", "101"]);
    assert_eq!(a.codecs[0].encoding, "opus");
    assert_eq!(a.codecs[0].channels, Some(2));
    assert_eq!(a.codecs[0].fmtp_param("stereo"), Some(Some("1")));
    assert!(a.codecs[1].is("pcmu"));
    assert!(a.codecs[2].is("PCMA"));
    assert_eq!(a.codecs[3].fmtp_param("0-15"), Some(None));
    assert_eq!(a.direction, Direction::RecvOnly);

    let v = &offer.media()[1];
    assert_eq!(v.proto.as_str(), "RTP/AVPF");
    assert_eq!(v.codecs[0].h264_packetization_mode(), Some(0));
    assert_eq!(v.codecs[1].h264_packetization_mode(), Some(1));
    assert_eq!(
        v.codecs[1].h264_profile_level_id(),
        Some((0x64, 0x00, 0x28))
    );
    assert_eq!(v.mid.as_deref(), Some("v1"));
    assert_eq!(
        v.rtcp,
        Some(RtcpAttr {
            port: 10040,
            addr: Some("198.51.100.8".parse().unwrap())
        })
    );
    assert_eq!(v.rtcp_addr(), Some("198.51.100.8:10040".parse().unwrap()));
}

/// ffmpeg `-f rtp ... -sdp_file`: no session c=, media-level c=, fmtp with "; " separators.
const FFMPEG: &str = "
v=0
o=- 0 0 IN IP4 127.0.0.1
s=No Name
t=0 0
a=tool:libavformat 60.16.100
m=video 5004 RTP/AVP 96
c=IN IP4 127.0.0.1
b=AS:200
a=rtpmap:96 H264/90000
a=fmtp:96 packetization-mode=1; sprop-parameter-sets=Z2QADaw0pBQfsBEAAAMAAQAAAwAyDxQqYA==,aO48sA==; profile-level-id=64000D
m=audio 5006 RTP/AVP 97
c=IN IP4 127.0.0.1
b=AS:64
a=rtpmap:97 opus/48000/2
";

#[test]
fn ffmpeg_style_offer() {
    let offer = SdpOffer::parse(&crlf(FFMPEG)).unwrap();
    assert_eq!(offer.session_connection, None);
    let v = &offer.media()[0];
    assert_eq!(v.rtp_addr(), Some("127.0.0.1:5004".parse().unwrap()));
    let h = &v.codecs[0];
    assert_eq!(h.h264_packetization_mode(), Some(1));
    assert_eq!(h.h264_profile_level_id(), Some((0x64, 0x00, 0x0d)));
    assert_eq!(
        h.fmtp_param("sprop-parameter-sets"),
        Some(Some("Z2QADaw0pBQfsBEAAAMAAQAAAwAyDxQqYA==,aO48sA=="))
    );
    assert_eq!(offer.media()[1].codecs[0].clock_rate, 48000);
}

#[test]
fn ffmpeg_mp2t_and_aac_formats() {
    let offer = SdpOffer::parse(&crlf(
        "
v=0
o=- 0 0 IN IP4 127.0.0.1
s=No Name
c=IN IP4 127.0.0.1
t=0 0
m=video 5008 RTP/AVP 33
m=audio 5010 RTP/AVP 97 98
a=rtpmap:97 MPEG4-GENERIC/44100/2
a=fmtp:97 profile-level-id=1;mode=AAC-hbr;sizelength=13;indexlength=3;indexdeltalength=3; config=1210
a=rtpmap:98 L16/48000/2
",
    ))
    .unwrap();
    let ts = &offer.media()[0].codecs[0];
    assert!(ts.is("MP2T"));
    assert_eq!(ts.payload_type, 33);
    assert_eq!(ts.clock_rate, 90000);
    let aac = &offer.media()[1].codecs[0];
    assert!(aac.is("mpeg4-generic"));
    assert_eq!(aac.channels, Some(2));
    assert_eq!(aac.fmtp_param("mode"), Some(Some("AAC-hbr")));
    assert_eq!(aac.fmtp_param("config"), Some(Some("1210")));
    assert!(offer.media()[1].codecs[1].is("L16"));
}

#[test]
fn ipv6_offer_is_answered_from_ipv6_address() {
    let offer = SdpOffer::parse(&crlf(
        "
v=0
o=- 1 1 IN IP6 2001:db8::7
s=-
c=IN IP6 2001:db8::7
t=0 0
m=video 30000 RTP/AVP 96
a=rtpmap:96 H264/90000
a=fmtp:96 packetization-mode=1
a=recvonly
",
    ))
    .unwrap();
    let m = &offer.media()[0];
    assert_eq!(
        m.rtp_addr(),
        Some(SocketAddr::new(
            "2001:db8::7".parse::<Ipv6Addr>().unwrap().into(),
            30000
        ))
    );
    let answer = offer.answer(&viewer_policy()).unwrap();
    let l = lines(&answer.to_bytes());
    assert!(
        l.contains(&"o=- 424242 7 IN IP6 2001:db8::10".to_string()),
        "{l:?}"
    );
    assert!(l.contains(&"c=IN IP6 2001:db8::10".to_string()));
    assert_eq!(
        answer.negotiated()[0].answerer_rtp,
        Some("[2001:db8::10]:40000".parse().unwrap())
    );
}

const MULTICAST: &str = "
v=0
o=- 7 7 IN IP4 192.0.2.2
s=Channel 1
t=0 0
a=rtcp-unicast:rsi
m=video 50000 RTP/AVPF 96
c=IN IP4 233.252.0.1/127
a=rtpmap:96 MP2T/90000
a=rtcp:50001 IN IP4 192.0.2.3
a=sendonly
";

#[test]
fn multicast_with_ttl_and_rtcp_unicast() {
    let offer = SdpOffer::parse(&crlf(MULTICAST)).unwrap();
    let m = &offer.media()[0];
    let c = m.connection.unwrap();
    assert!(c.is_multicast());
    assert_eq!(c.ip, IpAddr::V4(Ipv4Addr::new(233, 252, 0, 1)));
    assert_eq!(c.ttl, Some(127));
    assert_eq!(c.to_string(), "233.252.0.1/127");
    // Session-level a=rtcp-unicast applies to the media; the FT is in a=rtcp.
    let u = m.rtcp_unicast.as_ref().unwrap();
    assert_eq!(u.mode, RtcpUnicastMode::Rsi);
    assert_eq!(m.rtcp_addr(), Some("192.0.2.3:50001".parse().unwrap()));

    // A set-top box joining the multicast stream receives: RFC 3264 6.2 mirrors
    // the direction and keeps group and port.
    let mut policy = viewer_policy();
    policy.caps.direction = Direction::RecvOnly;
    let answer = offer.answer(&policy).unwrap();
    let l = lines(&answer.to_bytes());
    assert!(
        l.contains(&"m=video 50000 RTP/AVPF 96".to_string()),
        "{l:?}"
    );
    assert!(l.contains(&"c=IN IP4 233.252.0.1/127".to_string()));
    assert!(l.contains(&"a=recvonly".to_string()));
    assert!(answer.negotiated()[0].multicast);

    // A relay that only sends cannot answer a multicast sendonly offer.
    let err = offer.answer(&viewer_policy()).unwrap_err();
    assert!(matches!(
        err,
        NegotiationError::DirectionConflict {
            offered: Direction::SendOnly,
            wanted: Direction::SendOnly
        }
    ));
}

#[test]
fn ipv6_multicast_and_rtcp_unicast_forms() {
    let offer = SdpOffer::parse(&crlf(
        "
v=0
o=- 7 7 IN IP6 2001:db8::2
s=-
t=0 0
m=video 50000 RTP/AVP 33
c=IN IP6 ff15::101/3
a=rtcp-unicast: reflection
m=video 50002 RTP/AVP 33
c=IN IP6 ff15::104
a=rtcp-unicast:aggr x
",
    ))
    .unwrap();
    let c0 = offer.media()[0].connection.unwrap();
    assert!(c0.is_multicast());
    assert_eq!(c0.ttl, None);
    assert_eq!(c0.count, Some(3));
    assert_eq!(
        offer.media()[0].rtcp_unicast.as_ref().unwrap().mode,
        RtcpUnicastMode::Reflection
    );
    let u1 = offer.media()[1].rtcp_unicast.as_ref().unwrap();
    assert_eq!(u1.mode, RtcpUnicastMode::Other("aggr".into()));
    assert_eq!(u1.params, ["x"]);
    assert_eq!(u1.value(), "aggr x");
}

// ---------------------------------------------------------------- answering

#[test]
fn viewer_join_answer_field_by_field() {
    let offer = SdpOffer::parse(&crlf(BARESIP)).unwrap();
    let mut policy = viewer_policy();
    policy.transport.feedback_target = Some("192.0.2.20:7000".parse().unwrap());
    let answer = offer.answer(&policy).unwrap();
    let l = lines(&answer.to_bytes());
    let expected = [
        "v=0",
        "o=- 424242 7 IN IP4 192.0.2.10",
        "s=iptv",
        "c=IN IP4 192.0.2.10",
        "t=0 0",
        "a=rtcp-unicast:rsi",
        "m=audio 40002 RTP/AVP 96",
        "a=rtcp:7000 IN IP4 192.0.2.20",
        "a=rtpmap:96 opus/48000/2",
        "a=fmtp:96 stereo=1;sprop-stereo=1",
        "a=sendonly",
        // The offer's H.264 in packetization mode 1 (PT 98; the earlier PT 97 is mode 0,
        // which cannot carry the relay's FU-A), offerer's number and fmtp kept.
        "m=video 40000 RTP/AVPF 98",
        "a=rtcp:7000 IN IP4 192.0.2.20",
        "a=rtpmap:98 H264/90000",
        "a=fmtp:98 packetization-mode=1;profile-level-id=640028",
        "a=mid:v1",
        "a=sendonly",
    ];
    assert_eq!(l, expected);

    let n = answer.negotiated();
    assert_eq!(n.len(), 2);
    assert_eq!(n[1].codec.payload_type, 98);
    assert_eq!(n[1].direction, Direction::SendOnly);
    assert_eq!(
        n[1].offerer_rtp,
        Some("198.51.100.7:10032".parse().unwrap())
    );
    assert_eq!(
        n[1].offerer_rtcp,
        Some("198.51.100.8:10040".parse().unwrap())
    );
    assert_eq!(n[1].answerer_rtp, Some("192.0.2.10:40000".parse().unwrap()));
    assert_eq!(n[1].answerer_rtcp, Some("192.0.2.20:7000".parse().unwrap()));

    // The answer parses again with sdp-types and our view, same m-line order.
    let again = SessionDescription::parse(&answer.to_bytes()).unwrap();
    assert_eq!(again.media.len(), offer.media().len());
    assert_eq!(again.media[0].kind, MediaKind::Audio);
    assert_eq!(again.media[1].kind, MediaKind::Video);
}

#[test]
fn rejected_streams_keep_position_with_port_zero() {
    let offer = SdpOffer::parse(&crlf(
        "
v=0
o=- 1 1 IN IP4 198.51.100.7
s=-
c=IN IP4 198.51.100.7
t=0 0
m=application 9 UDP/BFCP *
m=video 20000 RTP/AVP 26 102
a=rtpmap:102 h264/90000
a=fmtp:102 packetization-mode=1
a=recvonly
m=audio 0 RTP/AVP 0
m=audio 20002 RTP/AVP 18
a=recvonly
",
    ))
    .unwrap();
    let answer = offer.answer(&viewer_policy()).unwrap();
    let l = lines(&answer.to_bytes());
    let m_lines: Vec<&String> = l.iter().filter(|x| x.starts_with("m=")).collect();
    assert_eq!(
        m_lines,
        [
            "m=application 0 UDP/BFCP *",
            "m=video 40000 RTP/AVP 102",
            "m=audio 0 RTP/AVP 0",
            "m=audio 0 RTP/AVP 18",
        ]
    );
    assert!(l.contains(&"a=rtpmap:102 h264/90000".to_string()));
    assert_eq!(answer.negotiated().len(), 1);
    assert_eq!(answer.negotiated()[0].index, 1);
    // Audio on the relay has an a=rtcp in the policy, but audio was rejected here.
    assert!(!l.iter().any(|x| x.starts_with("a=rtcp:")));
}

#[test]
fn all_common_codecs_when_not_single() {
    let offer = SdpOffer::parse(&crlf(BARESIP)).unwrap();
    let mut policy = viewer_policy();
    policy.caps.single_codec = false;
    policy.caps.codecs.push(CodecSpec::pcma());
    let answer = offer.answer(&policy).unwrap();
    let l = lines(&answer.to_bytes());
    assert!(
        l.contains(&"m=audio 40002 RTP/AVP 96 0 8".to_string()),
        "{l:?}"
    );
    // Only the mode-1 H.264 is common with the relay's sender spec.
    assert!(
        l.contains(&"m=video 40000 RTP/AVPF 98".to_string()),
        "{l:?}"
    );
    // A receiver's H.264 spec takes both modes, mode 1 first whatever the offer order.
    policy.caps.codecs[0] = CodecSpec::h264();
    let answer = offer.answer(&policy).unwrap();
    let l = lines(&answer.to_bytes());
    assert!(
        l.contains(&"m=video 40000 RTP/AVPF 98 97".to_string()),
        "{l:?}"
    );
    assert!(l.contains(&"a=rtcp:40013".to_string()));
    assert_eq!(
        answer.negotiated()[0].answerer_rtcp,
        Some("192.0.2.10:40013".parse().unwrap())
    );
}

#[test]
fn producer_sendonly_offer_answered_recvonly() {
    let offer = OfferBuilder::new(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 9)), 99)
        .session_name("my channel")
        .media(OfferedMedia::video(6000, Direction::SendOnly))
        .build()
        .unwrap();
    let mut policy = viewer_policy();
    policy.caps.direction = Direction::RecvOnly;
    let answer = offer.answer(&policy).unwrap();
    let l = lines(&answer.to_bytes());
    assert!(l.contains(&"a=recvonly".to_string()));
    assert!(l.contains(&"m=video 40000 RTP/AVP 96".to_string()));
}

#[test]
fn direction_table_rfc3264_6_1() {
    let mk = |dir: &str| {
        SdpOffer::parse(&crlf(&format!(
            "v=0\no=- 1 1 IN IP4 198.51.100.7\ns=-\nc=IN IP4 198.51.100.7\nt=0 0\nm=video 20000 RTP/AVP 96\na=rtpmap:96 H264/90000\na=fmtp:96 packetization-mode=1\na={dir}\n"
        )))
        .unwrap()
    };
    let answer_dir = |offer: &SdpOffer, ours: Direction| {
        let mut p = viewer_policy();
        p.caps.direction = ours;
        offer.answer(&p).map(|a| a.negotiated()[0].direction)
    };
    use Direction::*;
    assert_eq!(answer_dir(&mk("recvonly"), SendOnly).unwrap(), SendOnly);
    assert_eq!(answer_dir(&mk("sendrecv"), SendOnly).unwrap(), SendOnly);
    assert_eq!(answer_dir(&mk("sendrecv"), RecvOnly).unwrap(), RecvOnly);
    assert_eq!(answer_dir(&mk("sendonly"), RecvOnly).unwrap(), RecvOnly);
    assert_eq!(answer_dir(&mk("inactive"), SendOnly).unwrap(), Inactive);
    assert!(matches!(
        answer_dir(&mk("sendonly"), SendOnly),
        Err(NegotiationError::DirectionConflict { .. })
    ));
    assert!(matches!(
        answer_dir(&mk("recvonly"), RecvOnly),
        Err(NegotiationError::DirectionConflict { .. })
    ));
    let e = answer_dir(&mk("recvonly"), RecvOnly).unwrap_err();
    assert_eq!(e.warning().map(|w| w.0), Some(399));
}

// ---------------------------------------------------------------- UAC side, round trip

#[test]
fn uac_offer_answer_round_trip() {
    let ue: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
    let offer = OfferBuilder::new(ue, 5555)
        .media(OfferedMedia::video(20000, Direction::RecvOnly))
        .media(
            OfferedMedia::audio(20002, Direction::RecvOnly).with_rtcp(RtcpAttr {
                port: 20009,
                addr: None,
            }),
        )
        .build()
        .unwrap();
    let bytes = offer.to_bytes();
    let l = lines(&bytes);
    assert_eq!(
        &l[..5],
        [
            "v=0",
            "o=- 5555 1 IN IP4 127.0.0.1",
            "s=-",
            "c=IN IP4 127.0.0.1",
            "t=0 0"
        ]
    );
    assert!(l.contains(&"m=video 20000 RTP/AVP 96 33".to_string()));
    assert!(l.contains(&"a=fmtp:96 packetization-mode=1;profile-level-id=42e01f".to_string()));
    assert!(l.contains(&"a=rtpmap:33 MP2T/90000".to_string()));
    assert!(l.contains(&"m=audio 20002 RTP/AVP 111 0 8".to_string()));
    assert!(l.contains(&"a=rtpmap:111 opus/48000/2".to_string()));
    assert!(l.contains(&"a=rtpmap:0 PCMU/8000".to_string()));
    assert!(l.contains(&"a=rtcp:20009".to_string()));

    // The AS side: parse what went over the wire and answer.
    let as_offer = SdpOffer::parse(&bytes).unwrap();
    let mut policy = viewer_policy();
    policy.transport.feedback_target = Some("192.0.2.20:7000".parse().unwrap());
    let as_answer = as_offer.answer(&policy).unwrap();

    // The UAC side: check the answer against its offer.
    let got = offer.accept_answer(&as_answer.to_bytes()).unwrap();
    assert_eq!(got.negotiated(), as_answer.negotiated());
    let v = &got.negotiated()[0];
    assert_eq!(v.kind, MediaKind::Video);
    assert!(v.codec.is("H264"));
    assert_eq!(v.direction, Direction::SendOnly);
    assert_eq!(v.offerer_rtp, Some("127.0.0.1:20000".parse().unwrap()));
    assert_eq!(v.answerer_rtp, Some("192.0.2.10:40000".parse().unwrap()));
    assert_eq!(v.answerer_rtcp, Some("192.0.2.20:7000".parse().unwrap()));
    let a = &got.negotiated()[1];
    assert!(a.codec.is("opus"));
    assert_eq!(a.offerer_rtcp, Some("127.0.0.1:20009".parse().unwrap()));
    assert_eq!(
        got.media()[0].rtcp_unicast.as_ref().map(|u| &u.mode),
        Some(&RtcpUnicastMode::Rsi)
    );
}

#[test]
fn accept_answer_rejects_mismatches() {
    let offer = OfferBuilder::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 1)
        .media(OfferedMedia::video(20000, Direction::RecvOnly))
        .build()
        .unwrap();
    let head = "v=0\no=- 2 2 IN IP4 192.0.2.10\ns=-\nc=IN IP4 192.0.2.10\nt=0 0\n";
    let two = format!("{head}m=video 40000 RTP/AVP 96\nm=audio 40002 RTP/AVP 0\n");
    assert!(matches!(
        offer.accept_answer(&crlf(&two)),
        Err(NegotiationError::AnswerMismatch(_))
    ));
    let unknown_pt = format!("{head}m=video 40000 RTP/AVP 97\na=sendonly\n");
    assert!(matches!(
        offer.accept_answer(&crlf(&unknown_pt)),
        Err(NegotiationError::AnswerMismatch(_))
    ));
    let wrong_kind = format!("{head}m=audio 40000 RTP/AVP 96\n");
    assert!(matches!(
        offer.accept_answer(&crlf(&wrong_kind)),
        Err(NegotiationError::AnswerMismatch(_))
    ));
    let same_dir = format!("{head}m=video 40000 RTP/AVP 96\na=recvonly\n");
    assert!(matches!(
        offer.accept_answer(&crlf(&same_dir)),
        Err(NegotiationError::DirectionConflict { .. })
    ));
    let rejected = format!("{head}m=video 0 RTP/AVP 96\n");
    let a = offer.accept_answer(&crlf(&rejected)).unwrap();
    assert!(a.negotiated().is_empty());
    assert!(matches!(
        offer.accept_answer(b"garbage"),
        Err(NegotiationError::Malformed(_))
    ));
}

// ---------------------------------------------------------------- negative

#[test]
fn no_common_codec_is_305() {
    let offer = SdpOffer::parse(&crlf(
        "v=0\no=- 1 1 IN IP4 198.51.100.7\ns=-\nc=IN IP4 198.51.100.7\nt=0 0\nm=video 20000 RTP/AVP 100\na=rtpmap:100 VP8/90000\nm=audio 20002 RTP/AVP 9\n",
    ))
    .unwrap();
    let e = offer.answer(&viewer_policy()).unwrap_err();
    assert!(matches!(e, NegotiationError::NoCommonCodec), "{e:?}");
    assert_eq!(e.warning(), Some((305, "Incompatible media format")));

    // H.264 in a packetization mode we do not take is not common either.
    let offer = SdpOffer::parse(&crlf(
        "v=0\no=- 1 1 IN IP4 198.51.100.7\ns=-\nc=IN IP4 198.51.100.7\nt=0 0\nm=video 20000 RTP/AVP 96\na=rtpmap:96 H264/90000\na=fmtp:96 packetization-mode=2\n",
    ))
    .unwrap();
    assert!(matches!(
        offer.answer(&viewer_policy()),
        Err(NegotiationError::NoCommonCodec)
    ));
}

#[test]
fn unsupported_media_is_304() {
    let offer = SdpOffer::parse(&crlf(
        "v=0\no=- 1 1 IN IP4 198.51.100.7\ns=-\nc=IN IP4 198.51.100.7\nt=0 0\nm=message 9 TCP/MSRP *\nm=video 20000 udp 33\n",
    ))
    .unwrap();
    let e = offer.answer(&viewer_policy()).unwrap_err();
    assert!(matches!(e, NegotiationError::UnsupportedMedia), "{e:?}");
    assert_eq!(e.warning().unwrap().0, 304);
}

#[test]
fn no_transport_for_kind_is_a_policy_error() {
    let offer = SdpOffer::parse(&crlf(
        "v=0\no=- 1 1 IN IP4 198.51.100.7\ns=-\nc=IN IP4 198.51.100.7\nt=0 0\nm=audio 20002 RTP/AVP 0\n",
    ))
    .unwrap();
    let mut p = viewer_policy();
    p.transport.audio = None;
    assert!(matches!(offer.answer(&p), Err(NegotiationError::Policy(_))));
    p.transport.addresses.clear();
    assert!(matches!(offer.answer(&p), Err(NegotiationError::Policy(_))));
}

#[test]
fn garbage_and_broken_bodies() {
    for bad in [
        &b""[..],
        b"hello world",
        b"\x00\xff\xfe",
        b"v=1\r\n",
        b"m=video 1 RTP/AVP 96\r\n",
    ] {
        assert!(
            matches!(SdpOffer::parse(bad), Err(SdpError::Syntax(_))),
            "{bad:?}"
        );
    }
    // No m= line.
    assert!(matches!(
        SdpOffer::parse(
            b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"
        ),
        Err(SdpError::NoMedia)
    ));
    let head = "v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\nt=0 0\n";
    // Bad RTP payload format tokens.
    for fmt in ["abc", "128", "-1"] {
        let b = crlf(&format!(
            "{head}c=IN IP4 192.0.2.1\nm=video 1 RTP/AVP {fmt}\n"
        ));
        assert!(
            matches!(SdpOffer::parse(&b), Err(SdpError::BadFormat { .. })),
            "{fmt}"
        );
    }
    // Bad connection lines: address of the wrong type, unicast with TTL, not an address.
    for c in [
        "IN IP4 2001:db8::1",
        "IN IP6 192.0.2.1",
        "IN IP4 192.0.2.1/127",
        "IN IP4 example.com",
        "IN IP4 233.252.0.1/300",
    ] {
        let b = crlf(&format!("{head}c={c}\nm=video 1 RTP/AVP 96\n"));
        assert!(
            matches!(SdpOffer::parse(&b), Err(SdpError::BadConnection { .. })),
            "{c}"
        );
    }
    // Active media without any c=.
    let b = crlf(&format!("{head}m=video 1 RTP/AVP 96\n"));
    assert!(matches!(
        SdpOffer::parse(&b),
        Err(SdpError::MissingConnection(0))
    ));
    // Bad a=rtcp.
    let b = crlf(&format!(
        "{head}c=IN IP4 192.0.2.1\nm=video 1 RTP/AVP 96\na=rtcp:notaport\n"
    ));
    assert!(matches!(
        SdpOffer::parse(&b),
        Err(SdpError::BadAttribute { name: "rtcp", .. })
    ));
    // Too large and too many media are refused without work.
    let big = vec![b'a'; 70_000];
    assert!(matches!(SdpOffer::parse(&big), Err(SdpError::TooLarge(_))));
    let mut many = format!("{head}c=IN IP4 192.0.2.1\n");
    for _ in 0..40 {
        many.push_str("m=audio 1 RTP/AVP 0\n");
    }
    assert!(matches!(
        SdpOffer::parse(&crlf(&many)),
        Err(SdpError::TooMany)
    ));
}

#[test]
fn builder_refuses_empty_stream() {
    let r = OfferBuilder::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 1)
        .media(OfferedMedia::new(MediaKind::Video, 1, Direction::RecvOnly))
        .build();
    assert!(r.is_err());
    let r = OfferBuilder::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 1).build();
    assert!(matches!(r, Err(SdpError::NoMedia)));
}

// ---------------------------------------------------------------- Wireshark

/// Writes a pcap (LINKTYPE_RAW, IPv4/UDP) holding one SIP 200 OK with the SDP body.
fn sip_pcap(sdp: &[u8]) -> Vec<u8> {
    let mut sip = format!(
        "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-1\r\nFrom: <sip:ue@example.com>;tag=a\r\nTo: <sip:ch1@example.com>;tag=b\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\nContact: <sip:as@192.0.2.10>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n",
        sdp.len()
    )
    .into_bytes();
    sip.extend_from_slice(sdp);
    let udp_len = 8 + sip.len();
    let ip_len = 20 + udp_len;
    let mut ip = vec![
        0x45,
        0,
        (ip_len >> 8) as u8,
        ip_len as u8,
        0,
        1,
        0,
        0,
        64,
        17,
        0,
        0,
        192,
        0,
        2,
        10,
        192,
        0,
        2,
        1,
    ];
    let mut sum: u32 = ip
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    let ck = !(sum as u16);
    ip[10..12].copy_from_slice(&ck.to_be_bytes());
    ip.extend_from_slice(&5060u16.to_be_bytes());
    ip.extend_from_slice(&5060u16.to_be_bytes());
    ip.extend_from_slice(&(udp_len as u16).to_be_bytes());
    ip.extend_from_slice(&[0, 0]);
    ip.extend_from_slice(&sip);

    let mut out = Vec::new();
    out.extend_from_slice(&0xa1b2c3d4u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&0i32.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&65535u32.to_le_bytes());
    out.extend_from_slice(&101u32.to_le_bytes()); // LINKTYPE_RAW
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&(ip.len() as u32).to_le_bytes());
    out.extend_from_slice(&(ip.len() as u32).to_le_bytes());
    out.extend_from_slice(&ip);
    out
}

#[test]
fn tshark_decodes_answer_cleanly() {
    if std::process::Command::new("tshark")
        .arg("-v")
        .output()
        .is_err()
    {
        eprintln!("tshark not installed; skipping");
        return;
    }
    let offer = SdpOffer::parse(&crlf(BARESIP)).unwrap();
    let mut policy = viewer_policy();
    policy.transport.feedback_target = Some("192.0.2.20:7000".parse().unwrap());
    let answer = offer.answer(&policy).unwrap();
    let path = std::env::temp_dir().join(format!("sdp-answer-{}.pcap", std::process::id()));
    std::fs::write(&path, sip_pcap(&answer.to_bytes())).unwrap();
    let out = std::process::Command::new("tshark")
        .args(["-n", "-r"])
        .arg(&path)
        .args(["-V", "-o", "sip.display_raw_text:FALSE"])
        .output()
        .unwrap();
    let expert = std::process::Command::new("tshark")
        .args(["-n", "-r"])
        .arg(&path)
        .args(["-q", "-z", "expert,warn"])
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&path);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("Session Description Protocol"), "{text}");
    assert!(
        text.contains("Media Description, name and address (m): video 40000 RTP/AVPF 98"),
        "{text}"
    );
    assert!(
        text.contains("Connection Information (c): IN IP4 192.0.2.10"),
        "{text}"
    );
    assert!(!text.contains("Malformed"), "{text}");
    let ex = String::from_utf8_lossy(&expert.stdout);
    assert!(
        !ex.contains("Warning") && !ex.contains("Error"),
        "expert info: {ex}"
    );
}

// ---------------------------------------------------------------- round trips, robustness

#[test]
fn every_vector_round_trips_through_sdp_types() {
    for v in [BARESIP, FFMPEG, MULTICAST] {
        let offer = SdpOffer::parse(&crlf(v)).unwrap();
        let bytes = offer.to_bytes();
        lines(&bytes);
        let again = SdpOffer::parse(&bytes).unwrap();
        assert_eq!(again.media(), offer.media());
        assert_eq!(again.raw(), offer.raw());
    }
}

#[test]
fn session_level_direction_and_connection_are_inherited() {
    let offer = SdpOffer::parse(&crlf(
        "
v=0
o=- 1 1 IN IP4 198.51.100.7
s=-
c=IN IP4 198.51.100.7
t=0 0
a=recvonly
m=video 20000 RTP/AVP 33
m=audio 20002 RTP/AVP 0
c=IN IP4 198.51.100.8
a=inactive
",
    ))
    .unwrap();
    let (v, a) = (&offer.media()[0], &offer.media()[1]);
    assert_eq!(offer.session_direction, Some(Direction::RecvOnly));
    assert_eq!((v.direction, v.direction_attr), (Direction::RecvOnly, None));
    assert_eq!(a.direction, Direction::Inactive);
    assert_eq!(v.rtp_addr(), Some("198.51.100.7:20000".parse().unwrap()));
    assert_eq!(a.rtp_addr(), Some("198.51.100.8:20002".parse().unwrap()));
    let answer = offer.answer(&viewer_policy()).unwrap();
    let dirs: Vec<Direction> = answer.negotiated().iter().map(|n| n.direction).collect();
    assert_eq!(dirs, [Direction::SendOnly, Direction::Inactive]);
}

/// Deterministic mutation fuzzing of the vectors: whatever the bytes, parse and answer
/// return (Ok or a typed error), and whatever parses also answers or errs without panic
/// and re-parses after encoding.
#[test]
fn mutated_offers_never_panic() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5d9);
    let seeds: Vec<Vec<u8>> = [BARESIP, FFMPEG, MULTICAST]
        .iter()
        .map(|v| crlf(v))
        .collect();
    let alphabet = b"0123456789 /:=;.\r\nabcmvoctIPN46*-";
    let policy = viewer_policy();
    let mut parsed = 0;
    for i in 0..4000 {
        let mut b = seeds[i % seeds.len()].clone();
        for _ in 0..rng.gen_range(1..6) {
            let pos = rng.gen_range(0..b.len());
            match rng.gen_range(0..3) {
                0 => b[pos] = alphabet[rng.gen_range(0..alphabet.len())],
                1 => {
                    b.remove(pos);
                }
                _ => b.insert(pos, alphabet[rng.gen_range(0..alphabet.len())]),
            }
        }
        if let Ok(offer) = SdpOffer::parse(&b) {
            parsed += 1;
            if let Ok(answer) = offer.answer(&policy) {
                SessionDescription::parse(&answer.to_bytes()).unwrap();
                offer.accept_answer(&answer.to_bytes()).unwrap();
            }
            SdpOffer::parse(&offer.to_bytes()).unwrap();
        }
    }
    // The mutations are small: a good share must still parse, or the test tests nothing.
    assert!(parsed > 500, "only {parsed} mutated offers parsed");
}

/// What baresip 1.0 (Debian, `avcodec`) offers: H.264 twice, packetization-mode 0 first
/// (PT 96) and mode 1 second (PT 97), then H.263, MPEG-4, H.265.
const BARESIP_H264_MODES: &str = "
v=0
o=- 4004033051 1915197822 IN IP4 127.0.0.1
s=-
c=IN IP4 127.0.0.1
t=0 0
a=tool:baresip 1.0.0
m=audio 10008 RTP/AVP 0 8 101
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
a=sendrecv
m=video 10006 RTP/AVP 96 97 34 98 99
a=rtpmap:96 H264/90000
a=fmtp:96 packetization-mode=0;profile-level-id=42e01f
a=rtpmap:97 H264/90000
a=fmtp:97 packetization-mode=1;profile-level-id=42e01f
a=rtpmap:34 H263/90000
a=fmtp:34 CIF=1;CIF4=1
a=rtpmap:98 MP4V-ES/90000
a=fmtp:98 profile-level-id=3
a=rtpmap:99 H265/90000
a=fmtp:99 profile-id=1
a=sendrecv
a=rtcp-fb:* nack pli
";

/// The relay fragments NAL units larger than the MTU (its test pattern has them) into FU-A,
/// which only packetization-mode 1 allows (RFC 6184 sections 6.2 and 6.3): a viewer offering
/// H.264 in modes 0 and 1 is answered with its mode-1 payload type, whatever the order.
#[test]
fn h264_mode_1_is_chosen_over_an_earlier_mode_0() {
    let offer = SdpOffer::parse(&crlf(BARESIP_H264_MODES)).unwrap();
    let answer = offer.answer(&viewer_policy()).unwrap();
    let l = lines(&answer.to_bytes());
    let video = answer
        .negotiated()
        .iter()
        .find(|n| n.kind == MediaKind::Video)
        .unwrap();
    assert_eq!(video.codec.payload_type, 97, "{l:?}");
    assert_eq!(video.codec.h264_packetization_mode(), Some(1));
    assert!(l.contains(&"m=video 40000 RTP/AVP 97".to_string()), "{l:?}");
    assert!(
        l.contains(&"a=fmtp:97 packetization-mode=1;profile-level-id=42e01f".to_string()),
        "{l:?}"
    );
    assert!(
        !l.iter().any(|x| x.contains("packetization-mode=0")),
        "{l:?}"
    );
}

/// H.264 offered only in packetization-mode 0 (or with no fmtp, which means mode 0, RFC
/// 6184 section 8.1) cannot carry the relay's FU-A: no common codec, 488 with Warning 305.
#[test]
fn h264_mode_0_only_is_no_common_codec() {
    let only_mode_0 = BARESIP_H264_MODES
        .replace(
            "m=video 10006 RTP/AVP 96 97 34 98 99",
            "m=video 10006 RTP/AVP 96 34",
        )
        .replace("a=rtpmap:97 H264/90000\n", "")
        .replace(
            "a=fmtp:97 packetization-mode=1;profile-level-id=42e01f\n",
            "",
        );
    let offer = SdpOffer::parse(&crlf(&only_mode_0)).unwrap();
    assert_eq!(offer.media()[1].codecs.len(), 2);
    // Audio (PCMU) is common, the video stream is refused (port 0).
    let answer = offer.answer(&viewer_policy()).unwrap();
    assert!(answer
        .negotiated()
        .iter()
        .all(|n| n.kind != MediaKind::Video));
    let l = lines(&answer.to_bytes());
    assert!(l.contains(&"m=video 0 RTP/AVP 96 34".to_string()), "{l:?}");
    // Video alone: nothing in common at all.
    let video_only = only_mode_0
        .replace("m=audio 10008 RTP/AVP 0 8 101\n", "")
        .replace("a=rtpmap:0 PCMU/8000\n", "")
        .replace("a=rtpmap:8 PCMA/8000\n", "")
        .replace("a=rtpmap:101 telephone-event/8000\n", "")
        .replace("a=fmtp:101 0-15\n", "");
    let offer = SdpOffer::parse(&crlf(&video_only)).unwrap();
    assert_eq!(offer.media().len(), 1);
    let e = offer.answer(&viewer_policy()).unwrap_err();
    assert!(matches!(e, NegotiationError::NoCommonCodec), "{e:?}");
    assert_eq!(e.warning(), Some((305, "Incompatible media format")));

    let no_fmtp = "v=0\no=- 1 1 IN IP4 198.51.100.7\ns=-\nc=IN IP4 198.51.100.7\nt=0 0\n\
                   m=video 20000 RTP/AVP 96\na=rtpmap:96 H264/90000\na=recvonly\n";
    let offer = SdpOffer::parse(&crlf(no_fmtp)).unwrap();
    assert!(matches!(
        offer.answer(&viewer_policy()),
        Err(NegotiationError::NoCommonCodec)
    ));
}

#[test]
fn answer_names_the_relay_ssrc_and_the_peer_reads_it() {
    // RFC 5576 section 4.1: a=ssrc:<ssrc-id> cname:<cname> on the stream the relay sends.
    let offer = OfferBuilder::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 9)
        .media(OfferedMedia::video(5004, Direction::RecvOnly).codec(96, CodecSpec::h264_mode1()))
        .build()
        .unwrap();
    let mut policy = viewer_policy();
    policy.transport.video = Some(MediaTransport {
        rtp_port: 40000,
        rtcp: None,
        ssrc: Some(0xdead_beef),
    });
    policy.transport.cname = Some("relay-1".into());
    let answer = offer.answer(&policy).unwrap();
    let text = lines(&answer.to_bytes());
    assert!(
        text.iter().any(|l| l == "a=ssrc:3735928559 cname:relay-1"),
        "{text:?}"
    );
    let seen = offer.accept_answer(&answer.to_bytes()).unwrap();
    assert_eq!(seen.media()[0].ssrc, Some(0xdead_beef));
    // No ssrc asked: no line.
    let plain = offer.answer(&viewer_policy()).unwrap();
    assert!(!lines(&plain.to_bytes())
        .iter()
        .any(|l| l.starts_with("a=ssrc")));
    assert_eq!(plain.media()[0].ssrc, None);
}
